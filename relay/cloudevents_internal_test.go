package relay

import (
	"errors"
	"testing"
)

// On a CloudEvents topic a stored header may add an extension attribute,
// never set (or shadow, through case: SDKs lower-case names) one the relay
// writes.
func TestCheckCEHeader(t *testing.T) {
	for key, ok := range map[string]bool{
		"ce_tenant": true, "ce_traceparent": true, "x-other": true, "traceparent": true,
		"ce_id": false, "ce_source": false, "ce_type": false, "ce_time": false, "ce_subject": false, "ce_specversion": false,
		"ce_partitionkey": false, "ce_data": false, "ce_datacontenttype": false,
		"CE_ID": false, "Ce_tenant": false, "content-type": false, "Content-Type": false,
		"ce_": false, "ce_trace_id": false, "ce_Tenant": false, "ce_tenant\x00": false,
	} {
		err := checkCEHeader(key)
		if (err == nil) != ok || (err != nil && !errors.Is(err, ErrNotAllowed)) {
			t.Errorf("%q: %v, want allowed %v", key, err, ok)
		}
	}
}
