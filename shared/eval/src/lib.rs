//! LogQL metric evaluation over sample series: the evaluation grid, range windows, vector
//! aggregations, binary operators.
