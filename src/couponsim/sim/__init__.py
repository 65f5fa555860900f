"""The SimPy model: a traffic spike replayed through the real flows and scripts in
virtual time, with the figures and tables a capacity planner reads."""
