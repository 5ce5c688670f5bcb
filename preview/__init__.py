"""Evaluate the Pulumi program offline, under mocks, and look at the graph it would create."""
