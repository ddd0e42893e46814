"""The pure EEG library: no Dagster import anywhere under this package.

The seed's CLI, the Dagster assets and the remote training process all call these modules.
"""
