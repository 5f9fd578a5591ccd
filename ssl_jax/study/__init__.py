"""The label-efficiency study, the same for every modality.

  loop.py      budgets (including every label), label draws, CV on the labels, the rows
  methods.py   the methods by name, built from a modality's starting points and baselines
  baselines.py the classical baselines and TS2Vec's SVM protocol as methods
  report.py    results.json, the printed table and the plot

A modality (ssl_jax/modalities/) supplies the data, the encoders and the baselines it offers.
"""
