"""The PENDING doctor's causes, each created on purpose and named by the doctor."""
