"""The shell of one call and of the calls of a worker: its records, registry, setup, ending, recording, stream admission, model breaker and metrics."""
