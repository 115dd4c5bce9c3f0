package feedback_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/sluicehq/sluice/feedback"
)

const sesBounce = `{"notificationType":"Bounce","bounce":{"bounceType":"Permanent","bounceSubType":"General",
 "bouncedRecipients":[{"emailAddress":"gone@example.com","status":"5.1.1"}]},
 "mail":{"messageId":"0100","source":"noreply@acme.example","headers":[{"name":"X-Sluice-Conversation","value":"spring"}]}}`

// TestParse: every accepted shape yields the events it says, and anything
// else is refused as ErrInvalid.
func TestParse(t *testing.T) {
	t.Parallel()
	sns, _ := json.Marshal(map[string]string{"Type": "Notification", "MessageId": "x", "Message": sesBounce})
	hard := feedback.Event{Type: "bounce", BounceType: "hard", Address: "gone@example.com", Conversation: "spring"}
	for name, tc := range map[string]struct {
		body string
		want []feedback.Event
	}{
		"ses bounce":  {sesBounce, []feedback.Event{hard}},
		"sns wrapped": {string(sns), []feedback.Event{hard}},
		"ses transient": {`{"notificationType":"Bounce","bounce":{"bounceType":"Transient","bouncedRecipients":[{"emailAddress":"full@example.com"}]},"mail":{}}`,
			[]feedback.Event{{Type: "bounce", BounceType: "soft", Address: "full@example.com"}}},
		"ses complaint": {`{"notificationType":"Complaint","complaint":{"complainedRecipients":[{"emailAddress":"angry@example.com"}]},"mail":{}}`,
			[]feedback.Event{{Type: "complaint", Address: "angry@example.com"}}},
		"ses delivery": {`{"notificationType":"Delivery","mail":{}}`, nil},
		"generic": {`{"events":[{"type":"complaint","address":"a@example.com","conversation":"c"},{"type":"bounce","address":"b@example.com"}]}`,
			[]feedback.Event{{Type: "complaint", Address: "a@example.com", Conversation: "c"}, {Type: "bounce", BounceType: "soft", Address: "b@example.com"}}},
	} {
		got, err := feedback.Parse([]byte(tc.body))
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %+v, %v; want %+v", name, got, err, tc.want)
		}
	}
	for name, body := range map[string]string{
		"not json":     `{`,
		"unknown":      `{"hello":1}`,
		"bad type":     `{"events":[{"type":"open","address":"a@example.com"}]}`,
		"no address":   `{"events":[{"type":"complaint"}]}`,
		"subscription": `{"Type":"SubscriptionConfirmation","SubscribeURL":"https://sns.example/confirm"}`,
		"ses unknown":  `{"notificationType":"Weird","mail":{}}`,
	} {
		if _, err := feedback.Parse([]byte(body)); !errors.Is(err, feedback.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
}

// TestThresholds: nothing is judged below MinDelivered; above it, a share
// just past a threshold pauses and one at it does not.
func TestThresholds(t *testing.T) {
	t.Parallel()
	var th feedback.Thresholds
	th.SetDefaults()
	for _, tc := range []struct {
		c         feedback.Counts
		delivered int64
		pause     bool
	}{
		{feedback.Counts{Complaints: 500}, 999, false},
		{feedback.Counts{Complaints: 3}, 1000, false},
		{feedback.Counts{Complaints: 4}, 1000, true},
		{feedback.Counts{HardBounces: 50}, 1000, false},
		{feedback.Counts{HardBounces: 51}, 1000, true},
		{feedback.Counts{SoftBounces: 1000}, 1000, false},
	} {
		if got := th.Exceeded(tc.c, tc.delivered) != ""; got != tc.pause {
			t.Errorf("%+v over %d: pause %v, want %v", tc.c, tc.delivered, got, tc.pause)
		}
	}
}
