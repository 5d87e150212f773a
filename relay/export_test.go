package relay

// SetTxnHooks installs the transactional relay's test hooks until the
// returned restore is called (txn.go).
func SetTxnHooks(beforeCommit func(*Relay), afterCommit func(*Relay) bool) (restore func()) {
	txnHooks.beforeCommit, txnHooks.afterCommit = beforeCommit, afterCommit
	return func() { txnHooks.beforeCommit, txnHooks.afterCommit = nil, nil }
}
