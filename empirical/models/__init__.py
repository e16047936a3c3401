"""empirical.models: the models: loading and checking a local causal LM, the embedded tiny GPT-2
and its reproducible build."""
