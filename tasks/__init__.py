"""Prefect tasks wrapping the trainer (validate, train_attempt, evaluate, persist, report) and the store."""
