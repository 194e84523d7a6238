//! Bad input: a clear error, nothing changed.
