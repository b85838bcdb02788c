"""GraphQL resolvers, registered per (type, field) and bound onto the sandbox's schemas."""
