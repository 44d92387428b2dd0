package engine

import (
	"reflect"
	"testing"
	"unsafe"
)

// fill sets every exported field reachable from v to a non-zero value (one element in each
// slice and map), so a shallow copy anywhere shows up as shared memory.
func fill(v reflect.Value, depth int) {
	switch v.Kind() {
	case reflect.Pointer:
		if depth > 8 {
			return
		}
		p := reflect.New(v.Type().Elem())
		fill(p.Elem(), depth+1)
		v.Set(p)
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(v.Field(i), depth+1)
			}
		}
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 1, 1)
		fill(s.Index(0), depth+1)
		v.Set(s)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		fill(k, depth+1)
		fill(e, depth+1)
		m.SetMapIndex(k, e)
		v.Set(m)
	case reflect.String:
		v.SetString("x")
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(1)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(1)
	}
}

// shared reports the path of a pointer, slice array or map that a and b both reach.
func shared(a, b reflect.Value, path string) string {
	switch a.Kind() {
	case reflect.Pointer, reflect.Map:
		if a.IsNil() {
			return ""
		}
		if a.UnsafePointer() == b.UnsafePointer() {
			return path
		}
		if a.Kind() == reflect.Pointer {
			return shared(a.Elem(), b.Elem(), path)
		}
		for _, k := range a.MapKeys() {
			if p := shared(a.MapIndex(k), b.MapIndex(k), path+"["+k.String()+"]"); p != "" {
				return p
			}
		}
	case reflect.Slice:
		if a.Len() == 0 {
			return ""
		}
		if unsafe.Pointer(a.Index(0).UnsafeAddr()) == unsafe.Pointer(b.Index(0).UnsafeAddr()) {
			return path
		}
		for i := range a.Len() {
			if p := shared(a.Index(i), b.Index(i), path+"[]"); p != "" {
				return p
			}
		}
	case reflect.Struct:
		for i := range a.NumField() {
			if f := a.Type().Field(i); f.IsExported() {
				if p := shared(a.Field(i), b.Field(i), path+"."+f.Name); p != "" {
					return p
				}
			}
		}
	}
	return ""
}

// The index store hands out clones of its cached index: a clone that shares memory with the
// cache would let one caller's edit leak into the next command's view of the index.
func TestVMIndexCloneSharesNothing(t *testing.T) {
	x := &vmIndex{}
	fill(reflect.ValueOf(x).Elem(), 0)
	c := x.Clone()
	if !reflect.DeepEqual(x, c) {
		t.Fatalf("clone differs:\n%+v\n%+v", x, c)
	}
	if p := shared(reflect.ValueOf(x), reflect.ValueOf(c), "vmIndex"); p != "" {
		t.Fatalf("clone shares %s with the original: copy it in VM.clone", p)
	}
}
