"""The Executor: runs one plan as Ray work (data recipe on Ray Data, fine-tune on Ray Train, evaluation
behind the `Evaluator` interface) and returns a structured NodeResult dict."""
