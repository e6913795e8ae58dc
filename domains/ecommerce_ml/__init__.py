"""The ecommerce_ml domain: its DAGs (bundle folder dags/), hooks, operators, settings and tests."""
