//! End-to-end tests of the token service; helpers shared by the test files.
