"""The local AWS and what runs on it: aws/ (moto, corrected, and the stand-ins for what moto lacks), iam/ (IAM's
evaluation of the synthesized policies, and the harness that runs the real code through them) and demo/ (the seeded
Organization, the workflows deployed on it, on-call and the application, and `make demo`)."""
