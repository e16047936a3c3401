"""empirical.engine: the attack engine: the attack configuration (``attack_config``), the
measured loop (``attack``), its lean training pass (``training_forward``), the evaluation of
an iterate (``evaluator``, with ``evaluation_cache``), schedules, LoRA, the trainer monitor."""
