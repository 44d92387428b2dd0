package apicheck

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
)

// describe turns the filter's (multi-line, schema-dumping) errors into one line.
func describe(err error) string {
	var parts []string
	var walk func(error)
	walk = func(err error) {
		var me openapi3.MultiError
		if errors.As(err, &me) {
			for _, e := range me {
				walk(e)
			}
			return
		}
		var se *openapi3.SchemaError
		if errors.As(err, &se) {
			parts = append(parts, schemaProblem(se))
			return
		}
		var re *openapi3filter.RequestError
		if errors.As(err, &re) {
			if re.Err != nil && re.Err != err {
				var inner openapi3.MultiError
				var innerSE *openapi3.SchemaError
				if errors.As(re.Err, &inner) || errors.As(re.Err, &innerSE) {
					walk(re.Err)
					return
				}
			}
			switch {
			case errors.Is(re.Err, openapi3filter.ErrInvalidRequired) && re.RequestBody != nil:
				parts = append(parts, "body: this endpoint requires a request body")
				return
			case re.RequestBody == nil && re.Parameter == nil && re.Err != nil && strings.Contains(re.Err.Error(), "request body not allowed"):
				parts = append(parts, "body: this endpoint takes no request body")
				return
			}
			msg := re.Reason
			if re.Err != nil {
				msg = firstLine(re.Err.Error())
				if re.Reason != "" && re.Reason != msg {
					msg = re.Reason + ": " + msg
				}
			}
			if re.Parameter != nil {
				msg = fmt.Sprintf("parameter %q in %s: %s", re.Parameter.Name, re.Parameter.In, msg)
			} else if re.RequestBody != nil {
				msg = "body: " + msg
			}
			parts = append(parts, msg)
			return
		}
		parts = append(parts, firstLine(err.Error()))
	}
	walk(err)
	slices.Sort(parts)
	return strings.Join(slices.Compact(parts), "; ")
}

func schemaProblem(se *openapi3.SchemaError) string {
	field := strings.Join(se.JSONPointer(), ".")
	reason := se.Reason
	if se.Origin != nil {
		var inner *openapi3.SchemaError
		if errors.As(se.Origin, &inner) && inner != se {
			return schemaProblem(inner)
		}
		reason = firstLine(se.Origin.Error())
	}
	if reason == "" {
		reason = fmt.Sprintf("does not match schema %q", se.SchemaField)
	}
	switch {
	case se.SchemaField == "required":
		return fmt.Sprintf("body: required field %q is missing", field)
	case se.SchemaField == "properties" && strings.HasSuffix(reason, " is unsupported"):
		// The pointer names the parent object; the reason quotes the stray property.
		if name, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(reason, "property "), " is unsupported")); err == nil {
			return fmt.Sprintf("body: unknown field %q (not in the API schema; misspelt?)", strings.Join(append(se.JSONPointer(), name), "."))
		}
	}
	if field == "" {
		return "body: " + reason
	}
	return fmt.Sprintf("body field %q: %s", field, reason)
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return strings.TrimSpace(s)
}
