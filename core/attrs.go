package core

import (
	"slices"
	"strings"
)

// attrList is a stored session's attributes, sorted by key, each key once.
// Sessions hold a few attributes: a sorted slice costs one small
// allocation where a map costs a header and a group of eight slots, and
// finds a key as fast at that size. It is changed only under its record's
// lock, and its values are never modified in place.
type attrList []Attr

func compareKey(a Attr, key string) int { return strings.Compare(a.Key, key) }

// get returns the value of key.
func (l attrList) get(key string) ([]byte, bool) {
	if len(l) <= 8 {
		for i := range l {
			if l[i].Key == key {
				return l[i].Value, true
			}
		}
		return nil, false
	}
	if i, ok := slices.BinarySearchFunc(l, key, compareKey); ok {
		return l[i].Value, true
	}
	return nil, false
}

// str returns the value of key as a string ("" when absent).
func (l attrList) str(key string) string {
	v, _ := l.get(key)
	return string(v)
}

// put sets key to v, in place when key is present.
func (l *attrList) put(key string, v []byte) {
	i, ok := slices.BinarySearchFunc(*l, key, compareKey)
	if ok {
		(*l)[i].Value = v
		return
	}
	*l = slices.Insert(*l, i, Attr{Key: key, Value: v})
}

// remove deletes key and reports whether it was present.
func (l *attrList) remove(key string) bool {
	i, ok := slices.BinarySearchFunc(*l, key, compareKey)
	if ok {
		*l = slices.Delete(*l, i, i+1)
	}
	return ok
}

// size returns the bytes of keys plus values.
func (l attrList) size() int {
	n := 0
	for _, a := range l {
		n += len(a.Key) + len(a.Value)
	}
	return n
}

// attrListOf returns set as an attrList: sorted, and for a key given more
// than once, the last value.
func attrListOf(set []Attr) attrList {
	l := make(attrList, 0, len(set))
	sorted := slices.IsSortedFunc(set, func(a, b Attr) int { return strings.Compare(a.Key, b.Key) })
	for _, a := range set {
		if sorted && (len(l) == 0 || l[len(l)-1].Key < a.Key) {
			l = append(l, a)
			continue
		}
		l.put(a.Key, a.Value)
	}
	return l
}
