"""moto, corrected where it departs from documented AWS behaviour (moto_fixes), and stand-ins built from the AWS
reference for what it lacks: Neptune's data plane and Streams, cluster endpoints, write metrics, function URLs, and
IAM's evaluation of identity policies (iam_policy), which the data plane uses for IAM database authentication."""
