pub mod calendar;
pub mod schedule;
