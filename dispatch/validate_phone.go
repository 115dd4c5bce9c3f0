package dispatch

import (
	"github.com/nyaruka/phonenumbers"
	"github.com/sluicehq/sluice/wire"
)

// E.164 length bounds, in digits after the "+". ITU-T E.164 caps numbers at
// 15 digits. The floor is 7, not 8: Tokelau (+690) mobile numbers and Niue
// (+683) fixed numbers have a 4-digit national number, so 7 digits in all.
// Shorter strings cannot be valid anywhere, and everything in between is
// settled by the numbering plan check.
const (
	minE164Digits = 7
	maxE164Digits = 15
)

const (
	detailPhoneNoPlus     = "missing leading +"
	detailPhoneNonDigit   = "non-digit character after +"
	detailPhoneTooLong    = "more than 15 digits"
	detailPhoneTooShort   = "fewer than 7 digits"
	detailPhoneZero       = "country code starts with 0"
	detailPhoneUnparsable = "number cannot be parsed"
	detailPhoneInvalid    = "not a valid number in its country's numbering plan"
)

// ValidatePhone reports whether addr is an acceptable SMS recipient. It
// returns nil or an [*InvalidAddressError] for [ChannelSMS].
//
// addr must be in strict E.164 form: a "+" followed by 7 to 15 ASCII digits,
// the first of which is not 0, and nothing else. National formats, spaces,
// dashes, dots, parentheses and extensions are rejected with
// [wire.ReasonNotE164], and so is a number longer than E.164 allows (there is no
// separate too_long case for SMS): normalizing numbers is the API client's
// job, and guessing a region here would send messages to the wrong person.
// A well-formed number is then checked against the numbering plan of its
// country with libphonenumber (github.com/nyaruka/phonenumbers); a number
// that is not valid there, for instance a US number with an unassigned area
// code, is rejected with [wire.ReasonInvalidNumber].
func ValidatePhone(addr string) error {
	if addr == "" {
		return invalidPhone(wire.ReasonEmpty, detailEmpty)
	}
	if addr[0] != '+' {
		return invalidPhone(wire.ReasonNotE164, detailPhoneNoPlus)
	}
	digits := addr[1:]
	for i := 0; i < len(digits); i++ {
		if c := digits[i]; c < '0' || c > '9' {
			return invalidPhone(wire.ReasonNotE164, detailPhoneNonDigit)
		}
		if i == maxE164Digits {
			return invalidPhone(wire.ReasonNotE164, detailPhoneTooLong)
		}
	}
	if len(digits) < minE164Digits {
		return invalidPhone(wire.ReasonNotE164, detailPhoneTooShort)
	}
	if digits[0] == '0' {
		return invalidPhone(wire.ReasonNotE164, detailPhoneZero)
	}
	num, err := phonenumbers.Parse(addr, "")
	if err != nil {
		return invalidPhone(wire.ReasonInvalidNumber, detailPhoneUnparsable)
	}
	if !phonenumbers.IsValidNumber(num) {
		return invalidPhone(wire.ReasonInvalidNumber, detailPhoneInvalid)
	}
	return nil
}

func invalidPhone(r wire.Reason, detail string) error { return invalid(ChannelSMS, r, detail) }
