"""The `cloud_run_job` kind (its params schema; its runtime joins the waiting run state)."""
