//! Counts of open things for `/metrics`.

/// Counts something open (a widget socket, a panel's event stream) in a gauge while it lives.
pub struct OpenGauge(&'static str);

impl OpenGauge {
    pub fn new(gauge: &'static str) -> Self {
        metrics::gauge!(gauge).increment(1.0);
        Self(gauge)
    }
}

impl Drop for OpenGauge {
    fn drop(&mut self) {
        metrics::gauge!(self.0).decrement(1.0);
    }
}
