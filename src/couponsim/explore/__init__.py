"""The schedule explorer: run several flows against a fresh store in a chosen
order of their effects, judge the result with the invariant checker, and let
hypothesis (or an exhaustive walk) choose the orders."""
