"""IAM's policy evaluation (evaluator) and the harness that runs the real code on the synthesized roles (executed)."""
