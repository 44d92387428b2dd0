package apicheck

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/getkin/kin-openapi/openapi2"
	"github.com/getkin/kin-openapi/openapi2conv"
	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
	"go.yaml.in/yaml/v3"
)

// Flavor says which hypervisor a Checker speaks for; it decides the shape of error answers.
type Flavor string

const (
	CloudHypervisor Flavor = "cloud-hypervisor"
	Firecracker     Flavor = "firecracker"
)

// Checker validates requests against one hypervisor's API definition.
type Checker struct {
	flavor   Flavor
	basePath string // "/api/v1" for CH, "" for FC
	doc      *openapi3.T
	router   routers.Router
}

type options struct {
	strictProperties bool
}

// Option adjusts how a Checker is built.
type Option func(*options)

// StrictProperties makes object schemas that list their properties reject any other
// property (on by default). Neither API definition says additionalProperties: false, so
// without it a misspelt field name would pass unnoticed; objects that declare no
// properties, or say additionalProperties, stay open.
func StrictProperties(on bool) Option {
	return func(o *options) { o.strictProperties = on }
}

// LoadCloudHypervisor loads cloud-hypervisor-openapi.yaml from ReferenceDir.
func LoadCloudHypervisor(opts ...Option) (*Checker, error) {
	dir, err := ReferenceDir()
	if err != nil {
		return nil, err
	}
	return LoadFile(filepath.Join(dir, CloudHypervisorSpec), opts...)
}

// LoadFirecracker loads firecracker-swagger.yaml from ReferenceDir.
func LoadFirecracker(opts ...Option) (*Checker, error) {
	dir, err := ReferenceDir()
	if err != nil {
		return nil, err
	}
	return LoadFile(filepath.Join(dir, FirecrackerSpec), opts...)
}

// LoadFile loads an API definition: Swagger 2.0 (converted to OpenAPI 3, the Firecracker
// flavor) or OpenAPI 3 (the Cloud Hypervisor flavor, served under its first server's path).
func LoadFile(path string, opts ...Option) (*Checker, error) {
	o := options{strictProperties: true}
	for _, opt := range opts {
		opt(&o)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read API definition: %w", err)
	}
	var head struct {
		Swagger string `yaml:"swagger"`
		OpenAPI string `yaml:"openapi"`
	}
	if err := yaml.Unmarshal(data, &head); err != nil {
		return nil, fmt.Errorf("parse API definition %s: %w", path, err)
	}
	c := &Checker{}
	switch {
	case strings.HasPrefix(head.Swagger, "2."):
		var doc2 openapi2.T
		if err := openapi2.UnmarshalFromData(data, &doc2); err != nil {
			return nil, fmt.Errorf("parse Swagger definition %s: %w", path, err)
		}
		if c.doc, err = openapi2conv.ToV3(&doc2); err != nil {
			return nil, fmt.Errorf("convert Swagger definition %s to OpenAPI 3: %w", path, err)
		}
		c.flavor = Firecracker
		c.basePath = strings.TrimSuffix(doc2.BasePath, "/")
	case strings.HasPrefix(head.OpenAPI, "3."):
		loader := openapi3.NewLoader()
		if c.doc, err = loader.LoadFromData(data); err != nil {
			return nil, fmt.Errorf("parse OpenAPI definition %s: %w", path, err)
		}
		c.flavor = CloudHypervisor
		if len(c.doc.Servers) > 0 {
			u, err := url.Parse(c.doc.Servers[0].URL)
			if err != nil {
				return nil, fmt.Errorf("%s: server URL %q: %w", path, c.doc.Servers[0].URL, err)
			}
			c.basePath = strings.TrimSuffix(u.Path, "/")
		}
	default:
		return nil, fmt.Errorf("%s is neither Swagger 2.0 nor OpenAPI 3 (swagger=%q openapi=%q)", path, head.Swagger, head.OpenAPI)
	}
	// The base path is stripped by Check itself, so routes match on the path alone and
	// the Host header a client sends over a unix socket does not matter.
	c.doc.Servers = nil
	if o.strictProperties {
		closeObjects(c.doc)
	}
	if c.router, err = legacy.NewRouter(c.doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Flavor reports which hypervisor this Checker speaks for.
func (c *Checker) Flavor() Flavor { return c.flavor }

// Check validates one request. A body without Content-Type is taken as JSON (both
// hypervisors parse any body as JSON). The error is one line naming what is wrong.
func (c *Checker) Check(method, path string, header http.Header, body []byte) error {
	rawPath, rawQuery, _ := strings.Cut(path, "?")
	apiPath := rawPath
	if c.basePath != "" {
		rest, ok := strings.CutPrefix(rawPath, c.basePath)
		if !ok || (rest != "" && rest[0] != '/') {
			return fmt.Errorf("%s %s: unknown path: not under the API base path %s", method, path, c.basePath)
		}
		apiPath = rest
	}
	req, err := http.NewRequest(method, "http://localhost", bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	req.URL.Path, req.URL.RawQuery = apiPath, rawQuery
	req.Header = header.Clone()
	if req.Header == nil {
		req.Header = http.Header{}
	}
	if len(body) > 0 && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	route, params, err := c.router.FindRoute(req)
	if err != nil {
		return fmt.Errorf("%s %s: %s", method, path, c.routeProblem(req, err))
	}
	// Say "wrong content type" plainly rather than through the filter's longer message.
	if len(body) > 0 && route.Operation.RequestBody != nil {
		if mt, _, err := mime.ParseMediaType(req.Header.Get("Content-Type")); err != nil || mt != "application/json" {
			return fmt.Errorf("%s %s: Content-Type %q is not application/json", method, path, req.Header.Get("Content-Type"))
		}
	}
	in := &openapi3filter.RequestValidationInput{
		Request:    req,
		PathParams: params,
		Route:      route,
		Options: &openapi3filter.Options{
			MultiError:                        true,
			RejectWhenRequestBodyNotSpecified: true,
			SkipSettingDefaults:               true,
			AuthenticationFunc:                openapi3filter.NoopAuthenticationFunc,
		},
	}
	if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
		return fmt.Errorf("%s %s: %s", method, path, describe(err))
	}
	return pathMatchesBody(method, path, params, body)
}

// pathMatchesBody enforces what Firecracker does beyond its definition: a path parameter
// (/drives/{drive_id}) and the body field of the same name must agree.
func pathMatchesBody(method, path string, params map[string]string, body []byte) error {
	if len(params) == 0 || len(body) == 0 {
		return nil
	}
	var obj map[string]any
	if json.Unmarshal(body, &obj) != nil {
		return nil // not an object; the schema check already spoke
	}
	for name, want := range params {
		if got, ok := obj[name]; ok && got != want {
			gotJSON, _ := json.Marshal(got)
			return fmt.Errorf("%s %s: body field %q is %s but the path says %q", method, path, name, gotJSON, want)
		}
	}
	return nil
}

// routeProblem tells an unknown path from a known path asked with the wrong method.
func (c *Checker) routeProblem(req *http.Request, err error) string {
	var allowed []string
	for _, m := range []string{http.MethodGet, http.MethodPut, http.MethodPatch, http.MethodPost, http.MethodDelete, http.MethodHead, http.MethodOptions} {
		if m == req.Method {
			continue
		}
		probe := req.Clone(context.Background())
		probe.Method = m
		if _, _, err := c.router.FindRoute(probe); err == nil {
			allowed = append(allowed, m)
		}
	}
	if len(allowed) > 0 {
		return fmt.Sprintf("method %s not allowed (the API allows %s)", req.Method, strings.Join(allowed, ", "))
	}
	if errors.Is(err, routers.ErrPathNotFound) || strings.Contains(err.Error(), routers.ErrPathNotFound.Error()) {
		return "unknown path: the API defines no such endpoint"
	}
	return err.Error()
}

// readBody reads a request body whole and restores it for the next handler.
func readBody(r *http.Request) ([]byte, error) {
	if r.Body == nil {
		return nil, nil
	}
	body, err := io.ReadAll(r.Body)
	r.Body.Close()
	r.Body = io.NopCloser(bytes.NewReader(body))
	return body, err
}
