"""Operator commands that are not components (ARCHITECTURE.md): the staged first deployment
(`python -m ops.first_deploy`), the database restore and its drill (`python -m ops.db_restore`), and the load balancer
sweep the janitor runs on destroy, also an emergency command (`python -m ops.lb_sweep`)."""
