"""The seeded Organization, the workflows deployed on the local AWS, on-call engineers, an application that writes, and
the demo that runs them all."""
