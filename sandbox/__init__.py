"""The local AWS: moto, corrected where it departs from documented AWS behaviour, and seeded demo data."""
