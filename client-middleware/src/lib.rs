//! Tower middleware for the token service (built in a later step).
