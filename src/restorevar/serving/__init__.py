"""`restorevar serve`: the local web app and its job queue."""
