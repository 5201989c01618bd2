"""The `bigquery_load` kind (its params schema; its runtime joins the waiting run state)."""
