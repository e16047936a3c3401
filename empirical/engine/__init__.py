"""empirical.engine: the attack engine: the attack configuration, the measured loop, schedules,
LoRA, the trainer monitor."""
