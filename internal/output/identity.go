package output

import "github.com/socktrace/socktrace/internal/owner/identity"

// The owner's identity in JSON: the same seven keys on every record that
// names an owner, null where not known.

// appendIdentity appends ,"cgroup":...,"container":... for id (nil: all
// null).
func appendIdentity(b []byte, id *identity.Identity) []byte {
	if id == nil {
		return append(b, `,"cgroup":null,"unit":null,"container_id":null,"runtime":null,"pod":null,"namespace":null,"container":null`...)
	}
	b = appendKeyString(b, `,"cgroup":`, id.Cgroup)
	b = appendKeyString(b, `,"unit":`, id.Unit)
	b = appendKeyString(b, `,"container_id":`, id.ContainerID)
	b = appendKeyString(b, `,"runtime":`, id.Runtime)
	b = appendKeyString(b, `,"pod":`, id.Pod)
	b = appendKeyString(b, `,"namespace":`, id.Namespace)
	return appendKeyString(b, `,"container":`, id.Container)
}

// appendKeyString appends key then s as a JSON string, or null if s is "".
func appendKeyString(b []byte, key, s string) []byte {
	b = append(b, key...)
	if s == "" {
		return append(b, "null"...)
	}
	return AppendString(b, s)
}

// jsonIdentity is the same for records written with encoding/json.
type jsonIdentity struct {
	Cgroup      *string `json:"cgroup"`
	Unit        *string `json:"unit"`
	ContainerID *string `json:"container_id"`
	Runtime     *string `json:"runtime"`
	Pod         *string `json:"pod"`
	Namespace   *string `json:"namespace"`
	Container   *string `json:"container"`
}

func identityJSON(id *identity.Identity) jsonIdentity {
	if id == nil {
		return jsonIdentity{}
	}
	str := func(s string) *string {
		if s == "" {
			return nil
		}
		return &s
	}
	return jsonIdentity{str(id.Cgroup), str(id.Unit), str(id.ContainerID), str(id.Runtime),
		str(id.Pod), str(id.Namespace), str(id.Container)}
}
