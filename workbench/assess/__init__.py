"""The whole flow for any Keras image classifier (``python -m workbench assess``): the stages
run in order (``flow``) and what they tell: lines for the terminal and an HTML page
(``summary``); the zoo of ``keras.applications`` families run through it (``zoo``, ``make
zoo``).
"""
