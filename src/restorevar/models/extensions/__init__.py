"""Our add-ons to the RestoreVAR paper model, each composed explicitly and switched on in its own config
section; none of them is in the paper."""
