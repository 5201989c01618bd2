"""The `bigquery_query` kind (its params schema; its runtime joins the waiting run state)."""
