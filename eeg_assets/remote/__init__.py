"""The external side of training and evaluation: the Dagster Pipes entry points and the Modal app.

These run outside the Dagster process (a local subprocess or a Modal container). They use the
light ``dagster_pipes`` protocol package, never ``dagster`` itself.
"""
