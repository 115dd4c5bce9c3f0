// Package wire is sluice's wire contract, the one place every other package
// takes it from: the activation envelope and its codec (version 1, JSON),
// the subject grammar sluice.act.<lane>.<tenant>.<conversation> and the
// token rule of tenant and conversation ids, the lanes, and the reasons a
// message is not delivered with [OutcomeOf], the one function that says
// which outcome each reason means.
//
// It imports nothing of sluice: api, orchestrator, orchestrator/control,
// dispatch, errorlog, loadtest and cmd import it.
package wire
