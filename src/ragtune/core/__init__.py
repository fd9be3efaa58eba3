"""Pure logic: no I/O library is imported anywhere below this package."""
