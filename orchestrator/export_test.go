package orchestrator

// BulkConsumerName exposes bulkConsumerName to the external tests.
var BulkConsumerName = bulkConsumerName
