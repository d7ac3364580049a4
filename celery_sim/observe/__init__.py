"""What a run saw: the timeline, how it is recorded (signals, task events), and diagnoses from it."""
