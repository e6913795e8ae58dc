"""The hss_workflow domain: its DAGs (bundle folder dags/), hooks, operators, settings and tests."""
