//! What berth reads from a request's metadata: the namespace and the lease.

use berth_core::leases::GRPC_HEADER as LEASE_HEADER;
use berth_core::{identifiers, namespaces::GRPC_HEADER};
use tonic::{Request, Status};

/// The request's namespace, as containerd's `namespaces.NamespaceRequired`: missing is
/// `FailedPrecondition`, malformed is `InvalidArgument`.
pub fn namespace<T>(req: &Request<T>) -> Result<String, Status> {
    let ns = req
        .metadata()
        .get(GRPC_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ns.is_empty() {
        return Err(Status::failed_precondition("namespace is required"));
    }
    identifiers::validate(ns).map_err(crate::status::to_status)?;
    Ok(ns.to_string())
}

/// The lease the request runs under, if any.
pub fn lease<T>(req: &Request<T>) -> Option<String> {
    req.metadata()
        .get(LEASE_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_header_is_required_and_validated() {
        let req = Request::new(());
        assert_eq!(
            namespace(&req).unwrap_err().code(),
            tonic::Code::FailedPrecondition
        );
        let mut req = Request::new(());
        req.metadata_mut()
            .insert(GRPC_HEADER, "k8s.io".parse().unwrap());
        req.metadata_mut()
            .insert(LEASE_HEADER, "l1".parse().unwrap());
        assert_eq!(namespace(&req).unwrap(), "k8s.io");
        assert_eq!(lease(&req).as_deref(), Some("l1"));
        let mut req = Request::new(());
        req.metadata_mut()
            .insert(GRPC_HEADER, "no/slash".parse().unwrap());
        assert_eq!(
            namespace(&req).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
    }
}
