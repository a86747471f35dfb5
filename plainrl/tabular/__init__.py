"""Tabular reinforcement learning on small discrete worlds: where a learner starts.

    gridworld.py                   the GridWorld environment (plainrl/GridWorld-v0)
    tables.py                      what the methods share: Q-table agent, epsilon-greedy, the model, EpisodeLoop
    dp.py                          dynamic programming: policy improvement and evaluation
      value_iteration.py, policy_iteration.py, truncated_policy_iteration.py
    mc.py                          Monte Carlo: mean estimation, returns of an episode
      mc_basic.py, mc_exploring_starts.py, mc_epsilon_greedy.py
    td.py                          temporal-difference learning: the shared config and the TD targets
      sarsa.py (tabular_sarsa), expected_sarsa.py, n_step_sarsa.py, q_learning.py
    plots.py                       values.png: state values with the greedy policy's arrows

docs/tabular.md puts each algorithm's pseudocode beside the code.
"""
