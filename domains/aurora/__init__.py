"""The aurora domain: its DAGs (bundle folder dags/), hooks, operators, settings and tests."""
