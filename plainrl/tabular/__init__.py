"""Tabular reinforcement learning on small discrete worlds: where a learner starts.

    gridworld.py                   the GridWorld environment (plainrl/GridWorld-v0)
    models.py                      the model dynamic programming needs: Model, model_of, q_from_v, the env checks
    tables.py                      what the methods share: configs, Q-table agent, epsilon-greedy, EpisodeLoop
    dp.py                          dynamic programming: policy improvement and evaluation
      value_iteration.py, policy_iteration.py, truncated_policy_iteration.py
    mc.py                          Monte Carlo: mean estimation, returns of an episode
      mc_basic.py, mc_exploring_starts.py, mc_epsilon_greedy.py
    td.py                          temporal-difference learning: the shared config and the TD targets
      sarsa.py (tabular_sarsa), expected_sarsa.py, n_step_sarsa.py, q_learning.py
    plots.py                       values.png: state values with the greedy policy's arrows

Imports point one way: the methods import tables.py, which imports plots.py, which imports models.py
(gridworld.py imports none of them).

docs/tabular.md puts each algorithm's pseudocode beside the code.
"""
