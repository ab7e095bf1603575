"""The harness that runs the real code on the synthesized roles (executed), authorized by IAM's policy evaluation
(sandbox.aws.iam_policy)."""
