"""empirical.datasets: the data: examples and their files, the embedded synthetic benchmark,
tokenized encoding."""
