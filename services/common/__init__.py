"""Runtime shared by every Tailor service: settings, logging, gRPC plumbing, errors, storage."""
