"""One module per mutation. Each is a function of (root group in a writable session,
inputs) that validates before writing and returns the summary recorded in the commit."""
